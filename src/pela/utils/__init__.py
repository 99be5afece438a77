"""Small leaf helpers every stage uses: atomic files, progress, figures, memory."""

"""Models in and out: sources (timm, Hugging Face, directories), saving, loading, adapters,
export."""

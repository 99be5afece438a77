"""How good a model is: a classifier's accuracy (`classifier`), a language model's perplexity,
zero-shot multiple choice and greedy generations beside the original's, and a student's
block-by-block comparison with its teacher (`compare`). Evaluations during training are
`pela.training.periodic_evaluation`.
"""

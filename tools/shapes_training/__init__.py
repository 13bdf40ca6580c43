"""How the shipped shapes models were made: the CLIP, the vision-tower fine-tune and the VLM.

Not part of the installed package: run these from the repository root, e.g.
``python -m tools.shapes_training.train_clip --out DIR``. They import ``attnprompt`` (the scene
generator, the seed splits, the model loaders) and never its command line.
"""

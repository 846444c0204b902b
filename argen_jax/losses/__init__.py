"""Losses of the image tokenizer (`models/vqgan.py`), apart from its family:

    perceptual.py  LPIPS-style perceptual distance on feature weights read from a local .npz
    gan.py         PatchGAN hinge losses for the generator and the discriminator
"""

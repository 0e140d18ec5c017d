"""vggx: a VideoGigaGAN-style video super-resolution generator from PyTorch to Triton."""

__version__ = "0.1.0"

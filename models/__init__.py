"""Frame models for LumaLive: enhancement (learned x2 super-resolution, denoise, sharpen)
and moderation (NSFW scoring).

Modules, one concern each:
- ``quality``: YCbCr conversion, PSNR and SSIM on luma.
- ``superres``: the ESPCN network and its shipped weights.
- ``train_superres``: the training and evaluation script for those weights.
- ``enhance``: ``Enhancer``, the batch pipeline the stream workers call.
- ``nsfw``: the ``FrameModerator`` protocol and ``NsfwDetector`` (optional ``nudenet``).

Nothing here imports Ray; the Ray wrappers live elsewhere and inject these classes.
The package imports nothing eagerly, so ``import models.nsfw`` does not pull in torch.
"""

"""Super-resolution of faces: FIWHN (arXiv:2212.14181) trained and scored by the ``sr`` stage.

- `faceops.sr.degrade`: the one low-resolution degradation (antialiased bicubic, as PIL / MATLAB), shared by
  the ``sr`` stage, LRFR's low-resolution views (``faceops.train.lowres``) and the low-resolution evaluation
  probes (``faceops.eval.lowres``).
- `faceops.sr.quality`: PSNR / SSIM on the Y channel with border shaving (the SR papers' protocol).
- `faceops.sr.inference`: running a network on uint8 images; the LR / bicubic / SR / HR grid.
- `faceops.sr.data`: the images to learn from (shards or any image folder).
- `faceops.sr.train`: patch pairs through ``faceops.train.loop.fit``; scoring against bicubic.
- `faceops.sr.record`: the exported record of a super-resolution model.
- `faceops.sr.job`: ``run_sr``, the ``sr`` stage's work.

The network itself is registered in ``faceops.models`` (``fiwhn_x2/x3/x4``, ``faceops.models.fiwhn``).
Nothing is imported here, so a module that needs only the degradation imports only it.
"""

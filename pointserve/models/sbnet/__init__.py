"""The SBNet family (Ren et al., "SBNet: Sparse Blocks Network for Fast Inference", CVPR 2018): sparse-block
convolutions over a bird's-eye-view grid, run only where a mask (the dilated occupancy of a LiDAR scan) is active.

The host side (block geometry, ``reduce_mask``, gather / scatter indices) is numpy in
:mod:`pointserve.geometry.blocks`; the ops and blocks, with torch, are :mod:`pointserve.models.sbnet.ops`
(imported only when a model is built or benchmarked).
"""

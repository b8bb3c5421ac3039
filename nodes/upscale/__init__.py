"""Upscale models (ESRGAN/Real-ESRGAN families): loading from the upscale_models folder and tiled upscaling."""

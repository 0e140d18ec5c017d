"""Triton Python-backend ``model.py`` templates; the repository writer copies one into each version folder.

They run inside Triton's Python backend stub (``import triton_python_backend_utils``), not inside vggx:
nothing here imports them.
"""

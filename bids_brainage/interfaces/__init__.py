"""Small nipype interfaces (SimpleInterface style) around antspyx, nilearn and the model."""

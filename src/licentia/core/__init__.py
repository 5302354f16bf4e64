"""licentia.core: codes, the license model, signed document formats. No I/O."""

"""The ``licentia`` command (Typer + Rich). Never imported by ``import licentia``."""

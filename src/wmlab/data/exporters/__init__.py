"""Writers that turn an episode store into other formats (registered in :mod:`wmlab.data.formats`)."""

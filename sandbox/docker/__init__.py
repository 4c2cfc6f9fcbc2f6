"""Assets of the Docker sandbox backend: the image builder and the in-container supervisor."""

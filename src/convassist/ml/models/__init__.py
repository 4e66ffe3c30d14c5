"""Models: the manifest, downloads and checksums, the native llama.cpp loader, `/models`."""

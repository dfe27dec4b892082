//! Talos gRPC API client, talosconfig, secrets bundle and machine-config generation.

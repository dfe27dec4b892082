//! Talos Image Factory client with offline schematic IDs.

"""Content values and their pure maths: CIDs, manifests, chunking, Merkle trees, slot layout, erasure coding."""

"""Content values and their pure maths: CIDs, manifests, chunking, Merkle trees and slot layout."""

"""tidegate's controller: source (git) → observe → plan → execute → status."""

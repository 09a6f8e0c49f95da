"""tidegate's gate: Grenade-style upgrade tests on throw-away test clouds."""

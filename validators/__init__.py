"""tidegate's validators: schema, semantics, compatibility and transition rules."""

"""The consumer side: verify deliveries and load them into a warehouse."""

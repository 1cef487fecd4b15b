"""Small generic helpers with no codex-node knowledge: the async state machine, tracked tasks, parts, the lazy heap."""

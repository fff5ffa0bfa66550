"""The local test world: a fake GitHub, a scripted Anthropic model and real git fixtures."""

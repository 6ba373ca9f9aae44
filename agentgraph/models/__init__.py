"""Models built on agent graphs that are not learning rules of a network: the neural cellular
automaton (:mod:`agentgraph.models.nca`)."""

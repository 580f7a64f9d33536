"""What drives the engine: the embedded runtime (default), `replay` of a recorded file, and the
Kafka worker (`kafka`)."""

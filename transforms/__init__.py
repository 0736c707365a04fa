"""Pure transforms (DataFrame -> DataFrame, no session, no I/O) shared by batch jobs, streaming and features."""

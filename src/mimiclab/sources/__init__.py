"""The read side: what the user opened. Which builds exist and opening one (registry); the loading that
makes them lives apart, in mimiclab.load."""

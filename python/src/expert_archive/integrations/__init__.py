"""Drop-in replacements for the routed-expert stores of inference engines."""

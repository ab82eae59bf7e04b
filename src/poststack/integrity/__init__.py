"""diagnose, repair and clean: facts gathered once, issues derived from them, the fixes that are safe."""

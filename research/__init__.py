"""The research harness: experiment grids, reports, run records and the offline GPU kit. Not installed with the
package; run its scripts from the repository root (`python -m research.run_experiments ...`)."""

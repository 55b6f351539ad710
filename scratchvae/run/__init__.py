"""Training: one step done three ways (step), the loop around it (trainer), the run folder and its rules
(runfolder), checkpoints (checkpoint), the pictures a run draws (pictures), and several processes training
one model (distributed)."""

"""What the workflow stages share: Ray plumbing (``runtime``), the stage command line
(``stage_cli``), the resumable unit driver (``units``), store reading and scoring, and the stage
logic other stages compose (``preprocessing``, ``labelling``, ``training``, ``evaluation``,
``ensembling``). Nothing here imports a stage module (``workflows/<stage>.py``): stages import
this package, never each other (tests/unit/test_layering.py)."""

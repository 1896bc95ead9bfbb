"""kefu dialog core: the Rasa project, the action server and the shop (commerce)."""

"""rasa-sdk action server package: kefu's dialog-to-action hooks (``kefu actions``)."""

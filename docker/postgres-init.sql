-- Rasa's tracker store gets its own database beside kefu's (docker/compose.yml).
CREATE DATABASE rasa_tracker OWNER kefu;

"""Pure rendering: an alert's fields -> Telegram HTML, Discord embed, console text."""

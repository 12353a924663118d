"""parti-notifier: Parti live and price events to Telegram and Discord alerts."""

__version__ = "0.1.0"

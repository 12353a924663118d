"""Commands in: chat bots that let people manage their own watchlists (subscriptions)."""

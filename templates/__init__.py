"""Jinja2 templates: `mail/` for the bot's email, `pages/` for the magic-link pages."""

"""Hub-ready folders: export, layout scanning, dataset cards, publishing."""

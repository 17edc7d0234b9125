"""The curation backend: sources -> filters -> generate -> judge -> refine -> diversify."""

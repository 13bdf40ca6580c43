"""Visual-prompt forms (temporary table; replaced by form objects)."""

FORMS = ("overlay", "crop", "both", "zoom")

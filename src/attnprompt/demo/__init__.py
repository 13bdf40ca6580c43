"""The web demo (``attnprompt demo``; needs the ``[demo]`` extra: Gradio)."""

"""How zero-shot evaluation turns a class name into text: the prompt template and its placeholder.

Its own module, free of numpy and the models, so that `soundsearch eval --help` can show the default cheaply.
"""

DEFAULT_TEMPLATE = "This is a sound of {label}."
LABEL_PLACEHOLDER = "{label}"

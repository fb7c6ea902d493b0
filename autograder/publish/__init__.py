"""Publishing the course: ``release`` (student notebooks in release/ from source/), ``strip`` (outputs out of
source/), ``links`` (Colab and Binder links, setup cells), ``student_edition`` (a copy for students without
answers), ``answers`` (no ready answer to an exercise anywhere a student can read it); ``layout`` knows the
course's folders.
"""

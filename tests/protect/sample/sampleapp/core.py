"""Plain functions: the code a vendor wants to keep to itself."""

SECRET_MARKER = "sampleapp-secret-marker-7c1f"


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def greet(name):
    return f"hello {name}"


def crash(depth=2):
    if depth:
        return crash(depth - 1)
    raise ValueError("sampleapp crashed on purpose")

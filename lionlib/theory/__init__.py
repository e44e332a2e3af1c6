"""The paper's theory as code: the Lyapunov function H and its decrease rate (`lyapunov`), and the
continuous- and discrete-time dynamics it is stated for (`dynamics`). Depends only on `lionlib.kappa`."""

"""A student's server on the course hub: no formgrader (it would offer a course of their own home folder)."""
c = get_config()  # noqa: F821
c.ServerApp.jpserver_extensions = {"nbgrader.server_extensions.formgrader": False}

"""Web app: FastAPI backend (REST + persistent jobs) with the Gradio UI mounted on it.

Thin over `genrl_core.agent.GenRL`: nothing about training or inference lives here.
"""

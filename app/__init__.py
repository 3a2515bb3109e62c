"""Web app (FastAPI + Gradio) over genrl_core.agent; arrives with the app issue."""

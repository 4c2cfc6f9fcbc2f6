"""`POST /v1/execute`: run a program in the sandbox (stub; the sandbox work fills it)."""

from fastapi import APIRouter

router = APIRouter()

"""Placeholder until the domain lands."""

from fastapi import APIRouter

router = APIRouter()

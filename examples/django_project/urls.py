from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("report/", views.report),
    path("visits/<str:page>/", views.visits),
]

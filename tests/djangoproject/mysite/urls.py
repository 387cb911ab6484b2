from django.contrib import admin
from django.urls import path
from shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.index),
    path("stream/", views.stream),
    path("file/", views.download),
    path("async/", views.async_view),
    path("boom/", views.boom),
    path("audit/", views.audit),
    path("audit-log/", views.audit_log),
]
